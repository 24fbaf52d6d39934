variable "deployment" {
  description = "Deployment name (same as the geosteer-config module's)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.deployment))
    error_message = "deployment must be 1-31 lowercase letters, digits or '-'."
  }
}

variable "node_name" {
  description = "The node's NS label inside the zone (ns1): names its resources and tags."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.node_name))
    error_message = "node_name must be a lowercase DNS label such as ns1."
  }
}

variable "vpc_id" {
  description = "VPC of the node."
  type        = string
}

variable "subnet_id" {
  description = "A public subnet for the node (its Elastic IP is the NS glue)."
  type        = string
}

variable "ami_id" {
  description = "Debian 12 AMI."
  type        = string
}

variable "instance_type" {
  description = "Instance type; a steering DNS node is light (c7g.medium / c6i.large answer far more than a zone like this sees)."
  type        = string
  default     = "c6i.large"
}

variable "dns_firewall" {
  description = "Ports from geosteer-config's dns_firewall output (source public | admin): the only source of ingress rules."
  type = list(object({
    name     = string
    protocol = string
    from     = number
    to       = number
    source   = string
  }))
  validation {
    condition     = alltrue([for r in var.dns_firewall : contains(["public", "admin"], r.source) && contains(["udp", "tcp"], r.protocol)])
    error_message = "dns_firewall rules have protocol udp|tcp and source public|admin (pass geosteer-config's dns_firewall)."
  }
}

variable "admin_cidrs" {
  description = "Networks allowed on the admin/ICE API port; empty (the default) = API reachable only from the node itself."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs must be CIDR blocks, and not 0.0.0.0/0 (the API changes steering)."
  }
}

variable "ssh_cidrs" {
  description = "Networks allowed to SSH; empty (the default) = SSH closed."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "ssh_cidrs must be CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "user_data" {
  description = "cloud-init user-data from geosteer-config's dns_user_data (holds no secret)."
  type        = string
}

variable "secret_name" {
  description = "geosteer-config's secret_names.dns: the name the user-data reads at boot, used as is."
  type        = string
}

variable "create_secret" {
  description = "Create the DNS secret in this AWS region. Secrets Manager is regional: true for the first node of each AWS region, false for further nodes of the same region (they read the same secret)."
  type        = bool
  default     = true
}

variable "dns_secret" {
  description = "JSON {turn_secrets = [...] (TURN REST secrets the ICE API signs with, newest first), ice_api_keys = [...] (bearer keys of your backends), api_token (admin API)}; stored in Secrets Manager. Ignored when create_secret = false."
  type = object({
    turn_secrets = list(string)
    ice_api_keys = list(string)
    api_token    = string
  })
  sensitive = true
  default   = null
  validation {
    condition     = var.dns_secret == null ? true : length(var.dns_secret.turn_secrets) > 0 && length(var.dns_secret.ice_api_keys) > 0 && alltrue([for s in concat(var.dns_secret.turn_secrets, var.dns_secret.ice_api_keys, [var.dns_secret.api_token]) : length(s) >= 16])
    error_message = "dns_secret needs at least one TURN secret, one ICE API key and the admin API token, each at least 16 characters (what geosteer check requires)."
  }
}

variable "kms_key_id" {
  description = "KMS key for the secret and the volume; null = a key created here. A node with create_secret = false must pass the key the region's secret is encrypted with (the creating node's kms_key_arn output)."
  type        = string
  default     = null
}
