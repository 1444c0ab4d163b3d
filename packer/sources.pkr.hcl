source "qemu" "local" {
  iso_url      = var.upstream_path
  iso_checksum = var.upstream_checksum
  disk_image   = true

  format             = "raw"
  disk_size          = "${var.disk_size_mib}M"
  disk_interface     = "virtio"
  disk_discard       = "unmap"
  disk_detect_zeroes = "unmap"
  skip_compaction    = true
  output_directory   = var.output_directory
  vm_name            = "disk.raw"

  accelerator       = var.accelerator
  cpus              = 2
  memory            = 1536
  net_device        = "virtio-net"
  headless          = true
  efi_boot          = true
  efi_firmware_code = var.ovmf_code
  efi_firmware_vars = var.ovmf_vars
  # A virtio RNG fed by the host: without one, the guest kernel's first read of /dev/urandom can
  # spin for minutes under TCG waiting for jitter entropy (seen: cloud-init stuck 20 min).
  qemuargs = [
    ["-serial", "file:${var.serial_log}"],
    ["-object", "rng-random,id=rng0,filename=/dev/urandom"],
    ["-device", "virtio-rng-pci,rng=rng0"],
  ]

  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: imagefactory-build\nlocal-hostname: localhost\n"
    "user-data" = templatefile("${path.root}/seed/user-data.pkrtpl", {
      build_user     = var.build_user
      ssh_public_key = var.ssh_public_key
    })
  }

  communicator         = "ssh"
  ssh_username         = var.build_user
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = var.build_timeout
  # The seal role installed this script: it removes the build user and its keys, trims
  # free space and powers off, so nothing of the build session survives into the image.
  shutdown_command = "sudo /usr/local/sbin/image-seal-final"
  shutdown_timeout = "10m"
}

# Native AWS build: an owner-pinned Debian AMI, the same Ansible roles, tags on the AMI and
# its snapshots. The image is never replaced in place (force_deregister stays false).
source "amazon-ebs" "aws" {
  region        = var.aws_region
  instance_type = var.aws_instance_type
  source_ami_filter {
    filters     = local.aws_source_filters
    owners      = [var.aws_source_ami_owner]
    most_recent = true
  }
  ssh_username      = "admin"
  ami_name          = "${var.image_name}-${var.image_version}"
  ami_regions       = var.aws_copy_regions
  deprecate_at      = var.aws_deprecate_at
  imds_support      = "v2.0"
  ena_support       = true
  tags              = local.image_tags
  snapshot_tags     = local.image_tags
  run_tags          = { ManagedBy = "imagefactory", Purpose = "image build" }
  ssh_interface     = "public_ip"
  shutdown_behavior = "stop"
}

# Native Azure build: a pinned marketplace image, the same Ansible roles, then waagent
# deprovisioning; the result goes straight into the Compute Gallery.
source "azure-arm" "azure" {
  subscription_id    = var.azure_subscription_id
  use_azure_cli_auth = false
  location           = var.azure_location
  vm_size            = "Standard_B2s"
  os_type            = "Linux"
  # The source: the pinned marketplace image, or a parent stage's gallery version (never both).
  image_publisher = local.azure_from_gallery ? "" : var.azure_marketplace.publisher
  image_offer     = local.azure_from_gallery ? "" : var.azure_marketplace.offer
  image_sku       = local.azure_from_gallery ? "" : var.azure_marketplace.sku
  image_version   = local.azure_from_gallery ? "" : var.azure_marketplace.version
  shared_image_gallery {
    subscription   = local.azure_from_gallery ? var.azure_subscription_id : ""
    resource_group = local.azure_from_gallery ? var.azure_resource_group : ""
    gallery_name   = local.azure_from_gallery ? var.azure_gallery : ""
    image_name     = var.azure_source_image_definition
    image_version  = var.azure_source_gallery_version
  }
  managed_image_resource_group_name = var.azure_resource_group
  managed_image_name                = "${var.image_name}-${var.image_version}"
  azure_tags                        = local.image_tags
  shared_image_gallery_destination {
    subscription         = var.azure_subscription_id
    resource_group       = var.azure_resource_group
    gallery_name         = var.azure_gallery
    image_name           = var.azure_image_definition
    image_version        = var.azure_gallery_version
    replication_regions  = var.azure_replication_regions
    storage_account_type = "Standard_LRS"
  }
}
