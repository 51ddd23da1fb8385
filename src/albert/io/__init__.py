"""Reading and writing files: bounded readers, model names and the hub, output directories."""
