"""Independent verification: does any identifying value of the source survive in the output?"""
