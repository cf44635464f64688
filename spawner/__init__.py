"""User servers: profiles, GPU inventory and allocation, and the backends that start them."""
