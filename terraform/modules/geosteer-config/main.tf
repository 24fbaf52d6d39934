locals {
  tls_ports = concat([var.turns_port], var.turns_on_443 ? [443] : [])

  members = flatten([
    for r in var.regions : [
      for m in r.members : merge(m, { region = r.name })
    ]
  ])

  # Ports each relay listens on: the security groups of every cloud module
  # are built from this list and nothing else.
  relay_firewall = concat(
    [
      { name = "turn-udp", protocol = "udp", from = var.turn_port, to = var.turn_port, source = "public" },
      { name = "turn-tcp", protocol = "tcp", from = var.turn_port, to = var.turn_port, source = "public" },
    ],
    [for p in local.tls_ports : { name = "turns-${p}", protocol = "tcp", from = p, to = p, source = "public" }],
    [
      { name = "relay-range", protocol = "udp", from = var.relay_port_min, to = var.relay_port_max, source = "public" },
      { name = "health", protocol = "tcp", from = var.relay_http_port, to = var.relay_http_port, source = "dns_nodes" },
    ],
  )

  geosteer_toml = templatefile("${path.module}/templates/geosteer.toml.tftpl", {
    config_dir     = var.config_dir
    geoip_database = var.geoip_database
    ttl            = var.ttl
    regions        = var.regions
    members        = local.members
    zone           = var.zone
    steered_name   = var.steered_name
    api_listen     = var.api_listen
    etcd_endpoints = var.etcd_endpoints
    deployment     = var.deployment
    turn_port      = var.turn_port
    turns_port     = var.turns_port
  })

  zone_file = templatefile("${path.module}/templates/zone.tftpl", {
    zone      = var.zone
    dns_nodes = var.dns_nodes
  })

  relay_toml = {
    for r in var.regions : r.name => templatefile("${path.module}/templates/relay.toml.tftpl", {
      region         = r.name
      config_dir     = var.config_dir
      turn_port      = var.turn_port
      tls_ports      = local.tls_ports
      http_port      = var.relay_http_port
      capacity       = var.relay_capacity
      drain_timeout  = var.drain_timeout
      etcd_endpoints = var.etcd_endpoints
      deployment     = var.deployment
      port_min       = var.relay_port_min
      port_max       = var.relay_port_max
    })
  }

  anycast_vars = var.anycast == null ? null : merge(var.anycast, { zone = var.zone })
  anycast_toml = var.anycast == null ? null : templatefile("${path.module}/templates/anycast.toml.tftpl", local.anycast_vars)
  bird_anycast_conf = try(var.anycast.speaker, "") == "bird" ? templatefile(
    "${path.module}/templates/bird-anycast.conf.tftpl", local.anycast_vars
  ) : null
  anycast_files = merge(
    var.anycast == null ? {} : {
      "/etc/geosteer/anycast.toml"                   = local.anycast_toml
      "/etc/systemd/system/geosteer-anycast.service" = local.units["geosteer-anycast.service"]
    },
    local.bird_anycast_conf == null ? {} : { "/etc/bird/geosteer-anycast.conf" = local.bird_anycast_conf },
  )

  units = {
    "geosteer.service"         = file("${path.module}/files/geosteer.service")
    "geosteer-relay.service"   = file("${path.module}/files/geosteer-relay.service")
    "geosteer-anycast.service" = file("${path.module}/files/geosteer-anycast.service")
    # AWS helpers: rotated secrets (both roles), utilization and the
    # termination drain (relays). The package installs them; user-data only
    # writes /etc/default/geosteer-aws and enables them (EC2 user-data is
    # limited to 16 KiB).
    "geosteer-aws-secrets.service"     = file("${path.module}/files/geosteer-aws-secrets.service")
    "geosteer-aws-secrets.timer"       = file("${path.module}/files/geosteer-aws-secrets.timer")
    "geosteer-aws-utilization.service" = file("${path.module}/files/geosteer-aws-utilization.service")
    "geosteer-aws-utilization.timer"   = file("${path.module}/files/geosteer-aws-utilization.timer")
    "geosteer-aws-lifecycle.service"   = file("${path.module}/files/geosteer-aws-lifecycle.service")
  }
  sysctl = file("${path.module}/files/60-geosteer-relay.conf")

  # Secrets live in Secrets Manager under these names; machines read them at
  # boot through their instance role. Only names go into user-data. Each
  # region's relays have a secret of their own, so an instance role can be
  # scoped to its region's secret.
  dns_secret_name = "geosteer/${var.deployment}/dns"
  # Per region: the relays' autoscaling group, its Elastic IP pool tag
  # (geosteer:pool) and the utilization metric's dimension, all one name
  # that aws-relay-region derives by the same rule (it cannot take it as an
  # input: the regions here come from its addresses).
  relay_group_name  = { for r in var.regions : r.name => "geosteer-${var.deployment}-${r.name}" }
  relay_secret_name = { for r in var.regions : r.name => "geosteer/${var.deployment}/relay/${r.name}" }

  dns_user_data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    role           = "dns"
    package_url    = var.package_url
    package_sha256 = var.package_sha256
    secret_name    = local.dns_secret_name
    eip_pool       = null
    files = merge({
      "/etc/default/geosteer-aws"            = "GEOSTEER_ROLE=dns\nGEOSTEER_SECRET=${local.dns_secret_name}\n"
      "/etc/geosteer/geosteer.toml"          = local.geosteer_toml
      "/etc/geosteer/${var.zone}.zone"       = local.zone_file
      "/etc/systemd/system/geosteer.service" = local.units["geosteer.service"]
      "/etc/sysctl.d/60-geosteer-relay.conf" = local.sysctl
    }, local.anycast_files)
    services = concat(["geosteer.service"], var.anycast == null ? [] : ["geosteer-anycast.service"], ["geosteer-aws-secrets.timer"])
  })

  relay_user_data = {
    for r in var.regions : r.name => templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      role           = "relay"
      package_url    = var.package_url
      package_sha256 = var.package_sha256
      secret_name    = local.relay_secret_name[r.name]
      eip_pool       = local.relay_group_name[r.name]
      files = merge({
        "/etc/default/geosteer-aws" = join("", [
          "GEOSTEER_ROLE=relay\n",
          "GEOSTEER_SECRET=${local.relay_secret_name[r.name]}\n",
          "GEOSTEER_GROUP=${local.relay_group_name[r.name]}\n",
          "GEOSTEER_HEALTH_URL=http://127.0.0.1:${var.relay_http_port}/health\n",
        ])
        "/etc/geosteer/relay.toml.base"              = local.relay_toml[r.name]
        "/etc/systemd/system/geosteer-relay.service" = local.units["geosteer-relay.service"]
        "/etc/sysctl.d/60-geosteer-relay.conf"       = local.sysctl
      })
      services = ["geosteer-relay.service", "geosteer-aws-lifecycle.service", "geosteer-aws-utilization.timer", "geosteer-aws-secrets.timer"]
    })
  }
}
