terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

# One provider per AWS region in use. Terraform cannot create providers in a
# loop: a geosteer region or DNS node in an AWS region listed here is one
# map entry in variables; a new AWS region is a provider here, a module block
# in main.tf and its name in local.aws_regions.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
}

provider "aws" {
  alias  = "eu_central_1"
  region = "eu-central-1"
}

provider "aws" {
  alias  = "ap_southeast_1"
  region = "ap-southeast-1"
}
