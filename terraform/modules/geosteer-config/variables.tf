variable "deployment" {
  description = "Deployment name: etcd key prefix, Secrets Manager names and tags."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.deployment))
    error_message = "deployment must be 1-31 lowercase letters, digits or '-'."
  }
}

variable "zone" {
  description = "The delegated zone served by the DNS nodes, e.g. turn.example.com."
  type        = string
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.zone))
    error_message = "zone must be a lowercase DNS name without trailing dot."
  }
}

variable "steered_name" {
  description = "Name steered inside the zone: '@' for the apex or a label such as 'relay'."
  type        = string
  default     = "@"
  validation {
    condition     = var.steered_name == "@" || alltrue([for l in split(".", var.steered_name) : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", l))])
    error_message = "steered_name must be '@' or DNS labels separated by dots, not ${jsonencode(var.steered_name)}."
  }
}

variable "dns_nodes" {
  description = "The steering DNS nodes: NS label inside the zone (ns1) and public IPv4 address (glue)."
  type = list(object({
    name    = string
    address = string
  }))
  validation {
    condition     = length(var.dns_nodes) >= 2
    error_message = "at least two DNS nodes are needed (RFC 1034 §4.1; different regions)."
  }
  validation {
    condition     = alltrue([for n in var.dns_nodes : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", n.name))]) && length(distinct([for n in var.dns_nodes : lower(n.name)])) == length(var.dns_nodes)
    error_message = "dns_nodes[].name must be distinct DNS labels (the NS name inside the zone, e.g. ns1): ${join(", ", [for n in var.dns_nodes : jsonencode(n.name)])}."
  }
  validation {
    condition     = alltrue([for n in var.dns_nodes : can(cidrhost("${n.address}/32", 0))])
    error_message = "every dns_nodes[].address must be an IPv4 address."
  }
}

variable "regions" {
  description = "Relay regions: name, coordinates and members (addresses handed out, health URL, weight)."
  type = list(object({
    name        = string
    latitude    = number
    longitude   = number
    description = optional(string, "")
    members = list(object({
      name       = string
      addresses  = list(string)
      health_url = string
      weight     = optional(number, 100)
    }))
  }))
  validation {
    condition     = length(var.regions) >= 1
    error_message = "at least one region is needed."
  }
  validation {
    condition     = alltrue([for r in var.regions : r.latitude >= -90 && r.latitude <= 90 && r.longitude >= -180 && r.longitude <= 180])
    error_message = "regions[].latitude must be in -90..90 and longitude in -180..180."
  }
  validation {
    condition     = length(distinct([for r in var.regions : r.name])) == length(var.regions)
    error_message = "region names must be unique."
  }
  validation {
    condition     = alltrue(flatten([for r in var.regions : [for m in r.members : m.weight >= 1 && m.weight <= 65535]]))
    error_message = "regions[].members[].weight must be 1..65535."
  }
  # The rules below are those `geosteer check` applies to what this module
  # renders, so that a bad input fails at plan, naming what is wrong.
  validation {
    condition     = alltrue([for r in var.regions : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", r.name))])
    error_message = "region names must be DNS labels (letters, digits, '-'; not first or last; at most 63): ${join(", ", [for r in var.regions : jsonencode(r.name) if !can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", r.name))])}."
  }
  validation {
    condition     = alltrue(flatten([for r in var.regions : [for m in r.members : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", m.name))]]))
    error_message = "relay names must be DNS labels (letters, digits, '-'; not first or last; at most 63): ${join(", ", flatten([for r in var.regions : [for m in r.members : "${jsonencode(m.name)} in region ${jsonencode(r.name)}" if !can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", m.name))]]))}."
  }
  validation {
    # All relays form one pool: a name may appear once across all regions.
    condition     = length(distinct(flatten([for r in var.regions : [for m in r.members : lower(m.name)]]))) == length(flatten([for r in var.regions : r.members]))
    error_message = "relay names must be unique across all regions (case-insensitive); used more than once: ${join(", ", distinct([for n in flatten([for r in var.regions : [for m in r.members : lower(m.name)]]) : jsonencode(n) if length([for x in flatten([for r in var.regions : [for m in r.members : lower(m.name)]]) : x if x == n]) > 1]))}."
  }
  validation {
    condition     = alltrue(flatten([for r in var.regions : [for m in r.members : length(m.addresses) > 0]]))
    error_message = "every relay needs at least one address to hand out; none: ${join(", ", flatten([for r in var.regions : [for m in r.members : "${jsonencode(m.name)} in region ${jsonencode(r.name)}" if length(m.addresses) == 0]]))}."
  }
  validation {
    # An IPv4 or IPv6 unicast address: parses, not unspecified, not multicast.
    condition = alltrue(flatten([for r in var.regions : [for m in r.members : [for a in m.addresses :
      can(cidrhost("${a}/${strcontains(a, ":") ? 128 : 32}", 0)) && !contains(["0.0.0.0", "::"], try(cidrhost("${a}/${strcontains(a, ":") ? 128 : 32}", 0), "")) && !can(regex("^(22[4-9]|23[0-9])\\.|^[fF][fF]", a))
    ]]]))
    error_message = "relay addresses must be IPv4 or IPv6 unicast addresses; not: ${join(", ", flatten([for r in var.regions : [for m in r.members : [for a in m.addresses : "${jsonencode(a)} (relay ${jsonencode(m.name)}, region ${jsonencode(r.name)})" if !(can(cidrhost("${a}/${strcontains(a, ":") ? 128 : 32}", 0)) && !contains(["0.0.0.0", "::"], try(cidrhost("${a}/${strcontains(a, ":") ? 128 : 32}", 0), "")) && !can(regex("^(22[4-9]|23[0-9])\\.|^[fF][fF]", a)))]]]))}."
  }
  validation {
    condition     = alltrue(flatten([for r in var.regions : [for m in r.members : can(regex("^https?://[^/?#\\s]+", m.health_url))]]))
    error_message = "health_url must be an http:// or https:// URL; not: ${join(", ", flatten([for r in var.regions : [for m in r.members : "${jsonencode(m.health_url)} (relay ${jsonencode(m.name)}, region ${jsonencode(r.name)})" if !can(regex("^https?://[^/?#\\s]+", m.health_url))]]))}."
  }
}

variable "config_dir" {
  description = "Directory of the configuration on the machines."
  type        = string
  default     = "/etc/geosteer"
}

variable "geoip_database" {
  description = "Path of the MaxMind-format database on DNS nodes."
  type        = string
  default     = "/etc/geosteer/GeoLite2-City.mmdb"
}

variable "ttl" {
  description = "TTL of steered answers, seconds."
  type        = number
  default     = 30
  validation {
    condition     = var.ttl >= 5 && var.ttl <= 3600
    error_message = "ttl must be 5..3600."
  }
}

variable "turn_port" {
  description = "STUN/TURN port, UDP and TCP."
  type        = number
  default     = 3478
}

variable "turns_port" {
  description = "TURN over TLS port."
  type        = number
  default     = 5349
}

variable "turns_on_443" {
  description = "Also listen for TURN over TLS on 443 (gets through restrictive firewalls)."
  type        = bool
  default     = false
}

variable "relay_port_min" {
  description = "Lowest relay (allocation) port."
  type        = number
  default     = 49152
}

variable "relay_port_max" {
  description = "Highest relay (allocation) port."
  type        = number
  default     = 65535
  validation {
    condition     = var.relay_port_max <= 65535
    error_message = "relay_port_max must be <= 65535."
  }
}

variable "relay_http_port" {
  description = "Relay health/metrics port, reachable only from the DNS nodes."
  type        = number
  default     = 9641
}

variable "relay_capacity" {
  description = "Allocations per relay (limits.capacity); utilization = sessions / capacity."
  type        = number
  default     = 10000
}

variable "drain_timeout" {
  description = "Seconds a draining relay keeps relaying existing allocations."
  type        = number
  default     = 3600
}

variable "api_listen" {
  description = "Admin/ICE API listen address of DNS nodes."
  type        = string
  default     = "0.0.0.0:8053"
}

variable "etcd_endpoints" {
  description = "etcd client URLs for fleet membership; empty = static members only."
  type        = list(string)
  default     = []
}

variable "package_url" {
  description = "URL of the geosteer .deb the machines install."
  type        = string
  default     = "https://example.invalid/geosteer_0.1.0-1_amd64.deb"
}

variable "package_sha256" {
  description = "SHA-256 of that .deb; cloud-init refuses a package that does not match."
  type        = string
  default     = "0000000000000000000000000000000000000000000000000000000000000000"
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.package_sha256))
    error_message = "package_sha256 must be 64 lowercase hex digits."
  }
}

variable "anycast" {
  description = <<-EOT
    Optional anycast agent on every DNS node, for operators who bring their own
    BGP (BIRD or ExaBGP on the node, sessions to their routers): each node
    announces the service addresses in vips while its DNS answers on them
    (docs/anycast.md). null = no agent. With speaker = "bird" the module also
    renders a BIRD include with one disabled static protocol per VIP; with
    "exabgp" the operator's /etc/geosteer/exabgp.conf runs the agent as its
    process (docs/examples/anycast/exabgp.conf).
  EOT
  type = object({
    vips           = list(string)
    speaker        = optional(string, "bird")
    bird_socket    = optional(string, "/run/bird/bird.ctl")
    interval_ms    = optional(number, 1000)
    timeout_ms     = optional(number, 500)
    rise           = optional(number, 3)
    fall           = optional(number, 2)
    med            = optional(number)
    communities    = optional(list(string), [])
    metrics_listen = optional(string, "127.0.0.1:9180")
  })
  default = null
  # Terraform 1.11 evaluates both sides of ||: each rule is a conditional.
  validation {
    condition     = var.anycast == null ? true : length(var.anycast.vips) > 0 && length(distinct(var.anycast.vips)) == length(var.anycast.vips)
    error_message = "anycast.vips must list at least one address, each once."
  }
  validation {
    condition     = var.anycast == null ? true : alltrue([for v in var.anycast.vips : can(regex("^[0-9.]+$", v)) && can(cidrhost("${v}/32", 0))])
    error_message = "every anycast.vips entry must be an IPv4 address (the rendered DNS node listens on 0.0.0.0:53): ${var.anycast == null ? "" : join(", ", [for v in var.anycast.vips : jsonencode(v)])}."
  }
  validation {
    condition     = var.anycast == null ? true : contains(["bird", "exabgp"], var.anycast.speaker)
    error_message = "anycast.speaker must be \"bird\" or \"exabgp\"."
  }
  validation {
    condition     = var.anycast == null ? true : var.anycast.speaker != "bird" || length(var.anycast.bird_socket) > 0
    error_message = "anycast.bird_socket must name BIRD's control socket."
  }
  validation {
    condition     = var.anycast == null ? true : var.anycast.interval_ms >= 50 && var.anycast.timeout_ms >= 1 && var.anycast.timeout_ms < var.anycast.interval_ms
    error_message = "anycast.interval_ms must be at least 50 and anycast.timeout_ms between 1 and interval_ms - 1."
  }
  validation {
    condition     = var.anycast == null ? true : var.anycast.rise >= 1 && var.anycast.fall >= 1
    error_message = "anycast.rise and anycast.fall must be at least 1."
  }
  validation {
    condition     = var.anycast == null ? true : alltrue([for c in var.anycast.communities : can(regex("^[0-9]{1,5}:[0-9]{1,5}$", c)) && alltrue([for p in split(":", c) : tonumber(p) <= 65535])])
    error_message = "anycast.communities must be ASN:VALUE with both parts 0..65535."
  }
  validation {
    condition     = var.anycast == null ? true : can(regex("^(127\\.[0-9.]+|\\[::1\\]):[0-9]{1,5}$", var.anycast.metrics_listen))
    error_message = "anycast.metrics_listen must be a loopback address:port (it also serves POST /v1/drain)."
  }
}
