"""Security tests: fuzzing of every committed OpenAPI description and the isolation matrix."""
