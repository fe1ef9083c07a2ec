"""trainctl's HTTP service (FastAPI). Never imports worker/, and imports torch only lazily."""
