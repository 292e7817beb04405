"""An idsproc module for prenacs 1.2 --idsproc, in Python: compute_id(str) -> str."""
import os


def compute_id(name):
    return "p_" + os.path.basename(name).split(".")[0]
