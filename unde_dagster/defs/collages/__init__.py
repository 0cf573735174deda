"""`product_collages`: one collage per SKU; runs on the collage host."""
