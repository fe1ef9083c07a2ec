"""What the API and the workers share: settings, database, models, artifacts, broker, job lifecycle."""
