variable "image_version" {
  type        = string
  description = "Version stamped into the image: a release tag such as release-X.Y.Z[-rc.N], or dev-<short-sha>[-dirty]."
  validation {
    condition     = can(regex("^([A-Za-z0-9._-]*(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?|dev-[0-9a-f]{7,40}(-dirty)?)$", var.image_version))
    error_message = "The image_version must be <tag prefix>X.Y.Z[-pre-release] (semver) or dev-<short-sha>[-dirty]."
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
  default     = ""
}

variable "upstream_checksum" {
  type        = string
  description = "Digest of the upstream image as sha256:<hex>; Packer checks it again before boot."
  default     = ""
  validation {
    condition     = var.upstream_checksum == "" || can(regex("^sha256:[0-9a-f]{64}$", var.upstream_checksum))
    error_message = "The upstream_checksum must be sha256:<64 hex digits>."
  }
}

variable "output_directory" {
  type        = string
  description = "Empty build folder that receives the sealed RAW disk (disk.raw)."
  default     = ""
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
  default     = ""
  sensitive   = true
}

variable "ssh_public_key" {
  type        = string
  description = "Public half of the ephemeral key, given to cloud-init through the NoCloud seed."
  default     = ""
}

variable "ansible_extra_vars_file" {
  type        = string
  description = "JSON file of build facts (version, commit, upstream digest, build time) for the playbook."
  default     = ""
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
  default     = ""
}

variable "build_timeout" {
  type        = string
  description = "Longest time Packer waits for SSH to come up."
  default     = "30m"
}

# --- Cloud sources (amazon-ebs, azure-arm). Unused by the local build; defaults keep
# `packer validate` of the local source free of cloud settings.

variable "aws_region" {
  type        = string
  description = "Region the amazon-ebs build runs in."
  default     = "us-east-1"
}

variable "aws_copy_regions" {
  type        = list(string)
  description = "Other regions the AMI is copied to."
  default     = []
}

variable "aws_source_ami_owner" {
  type        = string
  description = "Account that must own the source AMI (the Debian cloud team's by default); never empty."
  default     = "136693071363"
  validation {
    condition     = can(regex("^([0-9]{12}|amazon|aws-marketplace|self)$", var.aws_source_ami_owner))
    error_message = "The aws_source_ami_owner must be a 12-digit account id, amazon, aws-marketplace or self (a parent stage)."
  }
}

variable "aws_source_ami_name" {
  type        = string
  description = "Name filter of the source AMI; empty when the source is found by its tags."
  default     = "debian-12-amd64-*"
}

variable "aws_source_ami_tags" {
  type        = map(string)
  description = "Tag filters of the source AMI: a parent stage's ImageVersion and ImageStage."
  default     = {}
}

variable "aws_source_ami_id" {
  type        = string
  description = "With the tag filters: the parent stage's AMI id, so only that very image matches."
  default     = ""
}

variable "image_stage" {
  type        = string
  description = "The stage of a multi-stage chain, tagged ImageStage on the image; empty for one stage."
  default     = ""
}

variable "aws_instance_type" {
  type        = string
  description = "Instance type of the build instance."
  default     = "t3.small"
}

variable "aws_deprecate_at" {
  type        = string
  description = "RFC 3339 time at which the AMI is deprecated (from imagefactory:aws.deprecateAfterDays)."
  default     = ""
}

variable "image_name" {
  type        = string
  description = "Base name of the image (AMI name, gallery image)."
  default     = "debian-12"
}

variable "upstream_digest" {
  type        = string
  description = "Source AMI id or marketplace URN, recorded in the image's tags."
  default     = ""
}

variable "azure_subscription_id" {
  type        = string
  description = "Subscription of the build and the gallery; credentials come from the environment (ARM_*)."
  default     = ""
}

variable "azure_resource_group" {
  type        = string
  description = "Resource group of the Compute Gallery."
  default     = ""
}

variable "azure_location" {
  type        = string
  description = "Region the azure-arm build VM runs in."
  default     = "westeurope"
}

variable "azure_gallery" {
  type        = string
  description = "Compute Gallery that receives the image version."
  default     = "imagefactory"
}

variable "azure_image_definition" {
  type        = string
  description = "Gallery image definition (Linux, generation V2, x64)."
  default     = "debian-12"
}

variable "azure_gallery_version" {
  type        = string
  description = "Gallery image version X.Y.Z, derived from release-X.Y.Z."
  default     = "0.0.0"
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.azure_gallery_version))
    error_message = "The azure_gallery_version must be X.Y.Z."
  }
}

variable "azure_replication_regions" {
  type        = list(string)
  description = "Regions the gallery version is replicated to."
  default     = []
}

variable "azure_marketplace" {
  type        = map(string)
  description = "Marketplace source image: publisher, offer, sku and a pinned version."
  default = {
    publisher = "Debian"
    offer     = "debian-12"
    sku       = "12-gen2"
    version   = "0.20250101.0"
  }
}

variable "azure_source_image_definition" {
  type        = string
  description = "A parent stage's gallery image definition; with azure_source_gallery_version the build starts from that gallery version instead of the marketplace image."
  default     = ""
}

variable "azure_source_gallery_version" {
  type        = string
  description = "The parent stage's gallery version X.Y.Z in azure_gallery (empty: start from azure_marketplace)."
  default     = ""
  validation {
    condition     = var.azure_source_gallery_version == "" || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.azure_source_gallery_version))
    error_message = "The azure_source_gallery_version must be X.Y.Z, or empty."
  }
}

variable "playbook" {
  type        = string
  description = "The stage's playbook, a file name under ansible/ (base.yml, site.yml, ...)."
  default     = "site.yml"
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*\\.ya?ml$", var.playbook))
    error_message = "The playbook must be a file name under ansible/ ending in .yml or .yaml."
  }
}
