"""Build the CPU image and run the compose stack on this machine: `python3 -m deploy.stack --help`."""
