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
  qemuargs          = [["-serial", "file:${var.serial_log}"]]

  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: imagefactory-build\nlocal-hostname: imagefactory-build\n"
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
