variable "image_version" {
  type        = string
  description = "Version stamped into the image: release-X.Y.Z from a git tag, or dev-<short-sha>[-dirty]."
  validation {
    condition     = can(regex("^(release-(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)|dev-[0-9a-f]{7,40}(-dirty)?)$", var.image_version))
    error_message = "The image_version must be release-X.Y.Z (strict semver) or dev-<short-sha>[-dirty]."
  }
}

variable "image_commit" {
  type        = string
  description = "Full git commit the image is built from, stamped into /etc/release."
  validation {
    condition     = can(regex("^[0-9a-f]{40}$", var.image_commit))
    error_message = "The image_commit must be a full 40-character git commit id."
  }
}

variable "upstream_path" {
  type        = string
  description = "Path of the verified upstream cloud image (qcow2 or raw) the build starts from."
}

variable "upstream_checksum" {
  type        = string
  description = "Digest of the upstream image as sha256:<hex>; Packer checks it again before boot."
  validation {
    condition     = can(regex("^sha256:[0-9a-f]{64}$", var.upstream_checksum))
    error_message = "The upstream_checksum must be sha256:<64 hex digits>."
  }
}

variable "output_directory" {
  type        = string
  description = "Empty build folder that receives the sealed RAW disk (disk.raw)."
}

variable "disk_size_mib" {
  type        = number
  description = "Virtual size of the built disk in MiB; a whole number of MiB as Azure requires."
  default     = 3072
  validation {
    condition     = var.disk_size_mib >= 1024 && floor(var.disk_size_mib) == var.disk_size_mib
    error_message = "The disk_size_mib must be a whole number of MiB, at least 1024."
  }
}

variable "accelerator" {
  type        = string
  description = "QEMU accelerator: kvm where a real probe boot worked, tcg otherwise."
  default     = "tcg"
  validation {
    condition     = contains(["kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be kvm or tcg."
  }
}

variable "build_user" {
  type        = string
  description = "Temporary account Packer logs in as; the seal step deletes it with its keys and sudoers."
  default     = "imagebuild"
}

variable "ssh_private_key_file" {
  type        = string
  description = "Ephemeral private key made for this build only, kept in memory-backed storage and deleted after."
  sensitive   = true
}

variable "ssh_public_key" {
  type        = string
  description = "Public half of the ephemeral key, given to cloud-init through the NoCloud seed."
}

variable "ansible_extra_vars_file" {
  type        = string
  description = "JSON file of build facts (version, commit, upstream digest, build time) for the playbook."
}

variable "ovmf_code" {
  type        = string
  description = "UEFI firmware code image (Debian package ovmf)."
  default     = "/usr/share/OVMF/OVMF_CODE_4M.fd"
}

variable "ovmf_vars" {
  type        = string
  description = "UEFI variable store template matching ovmf_code."
  default     = "/usr/share/OVMF/OVMF_VARS_4M.fd"
}

variable "serial_log" {
  type        = string
  description = "File that receives the guest's serial console, for diagnosing a build that does not come up."
}

variable "build_timeout" {
  type        = string
  description = "Longest time Packer waits for SSH to come up."
  default     = "30m"
}
