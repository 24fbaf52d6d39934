terraform {
  # Provider-free: only built-in functions, so `terraform test` runs anywhere.
  required_version = ">= 1.6.0"
}
