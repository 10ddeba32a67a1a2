"""custom-inputs."""
