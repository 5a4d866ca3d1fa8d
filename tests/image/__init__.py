"""The container image: the Dockerfile checked against the lock file, and the image built and run."""
