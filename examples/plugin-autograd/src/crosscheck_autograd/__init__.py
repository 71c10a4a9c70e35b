"""A crosscheck implementation written with HIPS autograd (see ``implementation``)."""
