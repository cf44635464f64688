"""Team projects: membership, shared folders, sharing servers, and what other features need from them."""
