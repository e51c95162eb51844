"""The Docker backend: the services as containers on a real engine (Docker SDK), their images and labels."""
