from .child_process import die_with_parent
from .cli import main

die_with_parent()  # a member's child of `comptk auto` ends with auto's process
main(prog_name="comptk")
