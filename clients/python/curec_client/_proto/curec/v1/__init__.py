"""Generated code of the curec.v1 API. Do not edit."""
