"""Reading image folders and preprocessing images."""
