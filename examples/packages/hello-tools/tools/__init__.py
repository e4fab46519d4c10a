"""The hello-tools package's Python tools."""
