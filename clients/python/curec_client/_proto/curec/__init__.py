"""Generated code. Do not edit."""
