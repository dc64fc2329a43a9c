"""Scripts that build the course's shipped artefacts and multi-run studies (run with `python -m`)."""
