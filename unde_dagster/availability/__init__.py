"""Store availability: Dubai stores of each brand and their in-store stock per colour SKU."""
