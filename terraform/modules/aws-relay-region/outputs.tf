output "region" {
  description = "The region entry for geosteer-config's regions list."
  value = {
    name      = var.region_name
    latitude  = var.latitude
    longitude = var.longitude
    members = [for i, e in aws_eip.relay : {
      name       = "${var.region_name}-${i}"
      addresses  = [e.public_ip]
      health_url = "http://${e.public_ip}:${var.health_port}/health"
    }]
  }
}

output "addresses" {
  description = "Elastic IPs of the relays."
  value       = aws_eip.relay[*].public_ip
}

output "health_urls" {
  description = "Health URLs the DNS nodes probe."
  value       = [for e in aws_eip.relay : "http://${e.public_ip}:${var.health_port}/health"]
}

output "autoscaling_group_name" {
  description = "Name of the relay autoscaling group: also its Elastic IP pool tag and the utilization metric's dimension (= geosteer-config's relay_group_names[region])."
  value       = aws_autoscaling_group.relay.name
}
