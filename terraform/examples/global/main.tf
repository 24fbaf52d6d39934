# A global geosteer deployment on AWS: relays in three regions, steering DNS
# nodes in two, one geosteer-config call rendering every file. Apply, then
# add the ns_records output at the parent zone (docs/deployment.md walks
# through it end to end).
locals {
  relay_modules = merge(module.relays_us_east_1, module.relays_eu_central_1, module.relays_ap_southeast_1)
  dns_modules   = merge(module.dns_us_east_1, module.dns_eu_central_1)
  # Every region's relays accept health probes from every DNS node.
  dns_node_cidrs = sort([for m in values(local.dns_modules) : m.cidr])
}

module "config" {
  source         = "../../modules/geosteer-config"
  deployment     = var.deployment
  zone           = var.zone
  package_url    = var.package_url
  package_sha256 = var.package_sha256
  dns_nodes      = [for name in sort(keys(var.dns_nodes)) : { name = name, address = local.dns_modules[name].address }]
  regions = [
    for name in sort(keys(var.relay_regions)) :
    merge(local.relay_modules[name].region, { description = var.relay_regions[name].description })
  ]
}

# --- relays, one module block per AWS region ---------------------------------

module "relays_us_east_1" {
  source    = "../../modules/aws-relay-region"
  for_each  = { for k, r in var.relay_regions : k => r if r.aws_region == "us-east-1" }
  providers = { aws = aws.us_east_1 }

  deployment     = var.deployment
  region_name    = each.key
  latitude       = each.value.latitude
  longitude      = each.value.longitude
  min_size       = each.value.min_size
  max_size       = each.value.max_size
  vpc_id         = var.networks[each.value.aws_region].vpc_id
  subnet_ids     = var.networks[each.value.aws_region].subnet_ids
  ami_id         = var.networks[each.value.aws_region].ami_id
  relay_firewall = module.config.relay_firewall
  dns_node_cidrs = local.dns_node_cidrs
  user_data      = module.config.relay_user_data[each.key]
  secret_name    = module.config.secret_names.relay[each.key]
  relay_secret   = var.relay_secrets[each.key]
}

module "relays_eu_central_1" {
  source    = "../../modules/aws-relay-region"
  for_each  = { for k, r in var.relay_regions : k => r if r.aws_region == "eu-central-1" }
  providers = { aws = aws.eu_central_1 }

  deployment     = var.deployment
  region_name    = each.key
  latitude       = each.value.latitude
  longitude      = each.value.longitude
  min_size       = each.value.min_size
  max_size       = each.value.max_size
  vpc_id         = var.networks[each.value.aws_region].vpc_id
  subnet_ids     = var.networks[each.value.aws_region].subnet_ids
  ami_id         = var.networks[each.value.aws_region].ami_id
  relay_firewall = module.config.relay_firewall
  dns_node_cidrs = local.dns_node_cidrs
  user_data      = module.config.relay_user_data[each.key]
  secret_name    = module.config.secret_names.relay[each.key]
  relay_secret   = var.relay_secrets[each.key]
}

module "relays_ap_southeast_1" {
  source    = "../../modules/aws-relay-region"
  for_each  = { for k, r in var.relay_regions : k => r if r.aws_region == "ap-southeast-1" }
  providers = { aws = aws.ap_southeast_1 }

  deployment     = var.deployment
  region_name    = each.key
  latitude       = each.value.latitude
  longitude      = each.value.longitude
  min_size       = each.value.min_size
  max_size       = each.value.max_size
  vpc_id         = var.networks[each.value.aws_region].vpc_id
  subnet_ids     = var.networks[each.value.aws_region].subnet_ids
  ami_id         = var.networks[each.value.aws_region].ami_id
  relay_firewall = module.config.relay_firewall
  dns_node_cidrs = local.dns_node_cidrs
  user_data      = module.config.relay_user_data[each.key]
  secret_name    = module.config.secret_names.relay[each.key]
  relay_secret   = var.relay_secrets[each.key]
}

# --- DNS nodes, one module block per AWS region ------------------------------

module "dns_us_east_1" {
  source    = "../../modules/aws-dns-node"
  for_each  = { for k, n in var.dns_nodes : k => n if n.aws_region == "us-east-1" }
  providers = { aws = aws.us_east_1 }

  deployment   = var.deployment
  node_name    = each.key
  vpc_id       = var.networks[each.value.aws_region].vpc_id
  subnet_id    = var.networks[each.value.aws_region].subnet_ids[0]
  ami_id       = var.networks[each.value.aws_region].ami_id
  dns_firewall = module.config.dns_firewall
  admin_cidrs  = var.admin_cidrs
  user_data    = module.config.dns_user_data
  secret_name  = module.config.secret_names.dns
  # One node per AWS region here, so each creates its region's copy of the
  # DNS secret (Secrets Manager is regional).
  create_secret = true
  dns_secret    = var.dns_secret
}

module "dns_eu_central_1" {
  source    = "../../modules/aws-dns-node"
  for_each  = { for k, n in var.dns_nodes : k => n if n.aws_region == "eu-central-1" }
  providers = { aws = aws.eu_central_1 }

  deployment   = var.deployment
  node_name    = each.key
  vpc_id       = var.networks[each.value.aws_region].vpc_id
  subnet_id    = var.networks[each.value.aws_region].subnet_ids[0]
  ami_id       = var.networks[each.value.aws_region].ami_id
  dns_firewall = module.config.dns_firewall
  admin_cidrs  = var.admin_cidrs
  user_data    = module.config.dns_user_data
  secret_name  = module.config.secret_names.dns
  # One node per AWS region here, so each creates its region's copy of the
  # DNS secret (Secrets Manager is regional).
  create_secret = true
  dns_secret    = var.dns_secret
}
