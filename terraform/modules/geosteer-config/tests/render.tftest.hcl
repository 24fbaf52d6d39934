# terraform test: assertions on the rendered output (no provider needed).
variables {
  deployment = "prod"
  zone       = "turn.example.com"
  dns_nodes = [
    { name = "ns1", address = "203.0.113.53" },
    { name = "ns2", address = "198.51.100.53" },
  ]
  regions = [
    {
      name    = "us-east", latitude = 39.04, longitude = -77.49
      members = [{ name = "use1-a", addresses = ["192.0.2.10"], health_url = "http://192.0.2.10:9641/health", weight = 150 }]
    },
    {
      name    = "eu-central", latitude = 50.11, longitude = 8.68
      members = [{ name = "euc1-a", addresses = ["192.0.2.20"], health_url = "http://192.0.2.20:9641/health" }]
    },
  ]
}

run "regions_weights_and_health_urls_are_carried" {
  command = plan
  assert {
    condition     = strcontains(output.geosteer_toml, "[regions.\"us-east\"]") && strcontains(output.geosteer_toml, "[regions.\"eu-central\"]")
    error_message = "every region must appear in geosteer.toml"
  }
  assert {
    condition     = strcontains(output.geosteer_toml, "weight = 150, health_url = \"http://192.0.2.10:9641/health\"")
    error_message = "weight and health_url of use1-a must be carried through"
  }
  assert {
    condition     = length(output.relay_toml) == 2 && strcontains(output.relay_toml["eu-central"], "region = \"eu-central\"")
    error_message = "one relay config per region"
  }
}

run "a_region_added_appears" {
  command = plan
  variables {
    regions = [
      {
        name    = "us-east", latitude = 39.04, longitude = -77.49
        members = [{ name = "use1-a", addresses = ["192.0.2.10"], health_url = "http://192.0.2.10:9641/health" }]
      },
      {
        name    = "ap-southeast", latitude = 1.29, longitude = 103.85
        members = [{ name = "apse1-a", addresses = ["192.0.2.30"], health_url = "http://192.0.2.30:9641/health" }]
      },
    ]
  }
  assert {
    condition     = strcontains(output.geosteer_toml, "[regions.\"ap-southeast\"]") && strcontains(output.geosteer_toml, "name = \"apse1-a\", region = \"ap-southeast\"")
    error_message = "the added region and its member must appear"
  }
  assert {
    condition     = !strcontains(output.geosteer_toml, "eu-central") && contains(keys(output.relay_user_data), "ap-southeast")
    error_message = "the region list alone decides what is rendered"
  }
}

run "secrets_never_rendered" {
  command = plan
  assert {
    condition     = strcontains(output.geosteer_toml, "token_file = \"/etc/geosteer/secrets/api-token\"") && !strcontains(output.geosteer_toml, "token = ")
    error_message = "DNS node secrets must come from files written at boot"
  }
  assert {
    condition     = !can(regex("(?m)^\\s*(secrets|api_keys|token)\\s*=", output.geosteer_toml)) && !strcontains(output.relay_toml["us-east"], "[auth]")
    error_message = "no secret list may be rendered"
  }
  assert {
    condition     = strcontains(output.dns_user_data, "geosteer/prod/dns") && !strcontains(output.dns_user_data, "token =")
    error_message = "user-data names the secret, never its value"
  }
}

run "ports_follow_the_settings" {
  command = plan
  variables {
    turns_on_443   = true
    relay_port_min = 40000
    relay_port_max = 41000
  }
  assert {
    condition     = contains([for r in output.relay_firewall : r.from], 443) && strcontains(output.relay_toml["us-east"], "0.0.0.0:443")
    error_message = "TURNS on 443 opens 443 and listens on it"
  }
  assert {
    condition     = one([for r in output.relay_firewall : r if r.name == "relay-range"]).to == 41000 && strcontains(output.relay_toml["us-east"], "port_max = 41000")
    error_message = "relay port range carried into the config and the firewall"
  }
  assert {
    condition     = one([for r in output.relay_firewall : r if r.name == "health"]).source == "dns_nodes"
    error_message = "the health/metrics port is open only to the DNS nodes"
  }
}

run "one_dns_node_is_refused" {
  command = plan
  variables {
    dns_nodes = [{ name = "ns1", address = "203.0.113.53" }]
  }
  expect_failures = [var.dns_nodes]
}

run "bad_sha256_is_refused" {
  command = plan
  variables {
    package_sha256 = "abc"
  }
  expect_failures = [var.package_sha256]
}

# Inputs `geosteer check` would refuse in the rendered geosteer.toml fail at
# plan instead, each naming the region or relay (issue 21).
run "duplicate_relay_names_across_regions_are_refused" {
  command = plan
  variables {
    regions = [
      {
        name    = "us-east", latitude = 39.04, longitude = -77.49
        members = [{ name = "relay-a", addresses = ["192.0.2.10"], health_url = "http://192.0.2.10:9641/health" }]
      },
      {
        name    = "eu-central", latitude = 50.11, longitude = 8.68
        members = [{ name = "Relay-A", addresses = ["192.0.2.20"], health_url = "http://192.0.2.20:9641/health" }]
      },
    ]
  }
  expect_failures = [var.regions]
}

run "a_bad_relay_address_is_refused" {
  command = plan
  variables {
    regions = [{
      name    = "us-east", latitude = 39.04, longitude = -77.49
      members = [{ name = "use1-a", addresses = ["192.0.2.300"], health_url = "http://192.0.2.10:9641/health" }]
    }]
  }
  expect_failures = [var.regions]
}

run "multicast_and_unspecified_addresses_are_refused" {
  command = plan
  variables {
    regions = [{
      name    = "us-east", latitude = 39.04, longitude = -77.49
      members = [{ name = "use1-a", addresses = ["239.1.1.1", "::", "ff02::1"], health_url = "http://192.0.2.10:9641/health" }]
    }]
  }
  expect_failures = [var.regions]
}

run "ipv6_relay_addresses_are_accepted" {
  command = plan
  variables {
    regions = [{
      name    = "us-east", latitude = 39.04, longitude = -77.49
      members = [{ name = "use1-a", addresses = ["192.0.2.10", "2001:db8::10"], health_url = "https://[2001:db8::10]:9641/health" }]
    }]
  }
  assert {
    condition     = strcontains(output.geosteer_toml, "\"2001:db8::10\"")
    error_message = "an IPv6 relay address is carried through"
  }
}

run "a_region_name_that_is_not_a_dns_label_is_refused" {
  command = plan
  variables {
    regions = [{
      name    = "eu central", latitude = 50.11, longitude = 8.68
      members = [{ name = "euc1-a", addresses = ["192.0.2.20"], health_url = "http://192.0.2.20:9641/health" }]
    }]
  }
  expect_failures = [var.regions]
}

run "a_relay_name_that_is_not_a_dns_label_is_refused" {
  command = plan
  variables {
    regions = [{
      name    = "eu-central", latitude = 50.11, longitude = 8.68
      members = [{ name = "euc1_a", addresses = ["192.0.2.20"], health_url = "http://192.0.2.20:9641/health" }]
    }]
  }
  expect_failures = [var.regions]
}

run "a_non_http_health_url_is_refused" {
  command = plan
  variables {
    regions = [{
      name    = "eu-central", latitude = 50.11, longitude = 8.68
      members = [{ name = "euc1-a", addresses = ["192.0.2.20"], health_url = "ftp://192.0.2.20/health" }]
    }]
  }
  expect_failures = [var.regions]
}

run "a_relay_without_an_address_is_refused" {
  command = plan
  variables {
    regions = [{
      name    = "eu-central", latitude = 50.11, longitude = 8.68
      members = [{ name = "euc1-a", addresses = [], health_url = "http://192.0.2.20:9641/health" }]
    }]
  }
  expect_failures = [var.regions]
}

run "a_dns_node_name_that_is_not_a_label_is_refused" {
  command = plan
  variables {
    dns_nodes = [
      { name = "ns1.example", address = "203.0.113.53" },
      { name = "ns2", address = "198.51.100.53" },
    ]
  }
  expect_failures = [var.dns_nodes]
}

run "duplicate_dns_node_names_are_refused" {
  command = plan
  variables {
    dns_nodes = [
      { name = "ns1", address = "203.0.113.53" },
      { name = "NS1", address = "198.51.100.53" },
    ]
  }
  expect_failures = [var.dns_nodes]
}

run "a_bad_steered_name_is_refused" {
  command = plan
  variables {
    steered_name = "relay..x"
  }
  expect_failures = [var.steered_name]
}

run "each_region_reads_its_own_relay_secret" {
  command = plan
  assert {
    condition     = alltrue([for r, name in output.secret_names.relay : strcontains(output.relay_user_data[r], "geosteer-fetch-secrets, relay, ${name}]")])
    error_message = "the relay user-data of a region must fetch the secret named in secret_names.relay[region]"
  }
  assert {
    condition     = output.secret_names.relay["eu-central"] == "geosteer/prod/relay/eu-central" && length(distinct(values(output.secret_names.relay))) == 2
    error_message = "one relay secret per region"
  }
}

# The DNS node: geosteer.toml, zone and unit in its user-data; no agent
# unless asked for.
run "dns_node_user_data_without_anycast" {
  command = plan
  assert {
    condition     = strcontains(output.dns_user_data, "path: /etc/geosteer/geosteer.toml") && strcontains(output.dns_user_data, "path: /etc/geosteer/turn.example.com.zone") && strcontains(output.dns_user_data, "path: /etc/systemd/system/geosteer.service")
    error_message = "the DNS node's user-data writes its config, zone and unit"
  }
  assert {
    condition     = strcontains(output.dns_user_data, "[systemctl, enable, --now, geosteer.service, geosteer-aws-secrets.timer]") && !strcontains(output.dns_user_data, "anycast")
    error_message = "without var.anycast no agent is written or started"
  }
  assert {
    condition     = output.anycast_toml == null && output.bird_anycast_conf == null
    error_message = "no agent config without var.anycast"
  }
  assert {
    condition     = strcontains(output.zone_file, "ns1 IN A 203.0.113.53") && strcontains(output.zone_file, "@ IN NS ns2.turn.example.com.")
    error_message = "the zone carries NS and glue of every DNS node"
  }
}

run "anycast_with_bird_renders_agent_unit_and_bird_include" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53", "198.51.100.54"], med = 10, communities = ["64512:53"], interval_ms = 250, timeout_ms = 200 }
  }
  assert {
    condition     = strcontains(output.anycast_toml, "speaker = { kind = \"bird\", socket = \"/run/bird/bird.ctl\" }") && strcontains(output.anycast_toml, "prefix = \"198.51.100.54/32\"")
    error_message = "the agent drives BIRD and announces every VIP"
  }
  assert {
    condition     = strcontains(output.anycast_toml, "check = { kind = \"dns\", name = \"turn.example.com\", qtype = \"SOA\" }") && strcontains(output.anycast_toml, "interval_ms = 250") && strcontains(output.anycast_toml, "bird_protocol = \"anycast_198_51_100_53\"")
    error_message = "each VIP is checked with the zone's SOA and names its BIRD protocol"
  }
  assert {
    condition     = !strcontains(output.anycast_toml, "med =") && strcontains(output.bird_anycast_conf, "protocol static anycast_198_51_100_53 {\n  disabled;") && strcontains(output.bird_anycast_conf, "bgp_med = 10; bgp_community.add((64512, 53));")
    error_message = "with BIRD, MED and communities live in the BIRD include, and each protocol starts disabled"
  }
  assert {
    condition     = strcontains(output.dns_user_data, "path: /etc/geosteer/anycast.toml") && strcontains(output.dns_user_data, "path: /etc/systemd/system/geosteer-anycast.service") && strcontains(output.dns_user_data, "path: /etc/bird/geosteer-anycast.conf")
    error_message = "the DNS node's user-data writes the agent config, its unit and the BIRD include"
  }
  assert {
    condition     = strcontains(output.dns_user_data, "[systemctl, enable, --now, geosteer.service, geosteer-anycast.service, geosteer-aws-secrets.timer]")
    error_message = "the agent is started after the DNS service"
  }
}

run "anycast_with_exabgp_carries_med_in_the_agent" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53"], speaker = "exabgp", med = 20, communities = ["64512:53"] }
  }
  assert {
    condition     = strcontains(output.anycast_toml, "speaker = { kind = \"exabgp\" }") && strcontains(output.anycast_toml, "med = 20") && strcontains(output.anycast_toml, "communities = [\"64512:53\"]")
    error_message = "with ExaBGP the agent's commands carry MED and communities"
  }
  assert {
    condition     = output.bird_anycast_conf == null && !strcontains(output.dns_user_data, "/etc/bird/")
    error_message = "no BIRD include for ExaBGP"
  }
}

run "anycast_ipv6_vip_is_refused" {
  command = plan
  variables {
    anycast = { vips = ["2001:db8::53"] }
  }
  expect_failures = [var.anycast]
}

run "anycast_bad_speaker_is_refused" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53"], speaker = "gobgp" }
  }
  expect_failures = [var.anycast]
}

run "anycast_timeout_not_below_interval_is_refused" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53"], interval_ms = 500, timeout_ms = 500 }
  }
  expect_failures = [var.anycast]
}

run "anycast_bad_community_is_refused" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53"], communities = ["64512:70000"] }
  }
  expect_failures = [var.anycast]
}

run "anycast_metrics_off_loopback_is_refused" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53"], metrics_listen = "0.0.0.0:9180" }
  }
  expect_failures = [var.anycast]
}

run "anycast_duplicate_vip_is_refused" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53", "198.51.100.53"] }
  }
  expect_failures = [var.anycast]
}

# AWS boot and runtime helpers in the user-data.
run "relay_user_data_claims_its_pool_address_and_enables_the_aws_helpers" {
  command = plan
  assert {
    condition     = strcontains(output.relay_user_data["us-east"], "[/usr/lib/geosteer/geosteer-aws-claim-eip, geosteer-prod-us-east, /etc/geosteer/public-ip]") && output.relay_group_names["us-east"] == "geosteer-prod-us-east"
    error_message = "a relay claims an address of its group's pool (tag geosteer:pool = the group name) before its secrets and config"
  }
  assert {
    condition     = strcontains(output.relay_user_data["us-east"], "[systemctl, enable, --now, geosteer-relay.service, geosteer-aws-lifecycle.service, geosteer-aws-utilization.timer, geosteer-aws-secrets.timer]")
    error_message = "relays enable the lifecycle drain, the utilization publisher and the secret refresh"
  }
  assert {
    condition     = strcontains(output.relay_user_data["eu-central"], "path: /etc/default/geosteer-aws") && strcontains(base64decode(regex("path: /etc/default/geosteer-aws\\n[^\\n]*\\n[^\\n]*\\n    content: ([A-Za-z0-9+/=]+)", output.relay_user_data["eu-central"])[0]), "GEOSTEER_GROUP=geosteer-prod-eu-central\nGEOSTEER_HEALTH_URL=http://127.0.0.1:9641/health")
    error_message = "the helpers' settings name the region's group and the relay's health port"
  }
  assert {
    condition     = !strcontains(output.dns_user_data, "claim-eip") && strcontains(output.dns_user_data, "geosteer-aws-secrets.timer]")
    error_message = "DNS nodes claim no pool address and refresh their secret"
  }
}

run "user_data_fits_ec2s_16_kib" {
  command = plan
  variables {
    anycast = { vips = ["198.51.100.53"] }
  }
  assert {
    condition     = length(output.dns_user_data) < 16384 && alltrue([for r, u in output.relay_user_data : length(u) < 16384])
    error_message = "EC2 refuses user-data above 16 KiB"
  }
}
