"""`store_availability`: in-store stock per Dubai store; runs on the scraper host."""
