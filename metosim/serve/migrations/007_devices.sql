-- Devices one solve is split over (slabs of its grid, one per device).
ALTER TABLE jobs ADD COLUMN devices integer NOT NULL DEFAULT 1;
