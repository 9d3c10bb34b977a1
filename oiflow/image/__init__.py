"""Image reconstruction (regularised maximum likelihood), IMAGE-OI I/O, image transforms."""
