packer {
  required_version = ">= 1.11.0"
  required_plugins {
    qemu = {
      # The newest qemu plugin release served by the Go module proxy (tools/versions.env).
      version = "= 1.0.9"
      source  = "github.com/hashicorp/qemu"
    }
    ansible = {
      version = "= 1.0.3"
      source  = "github.com/hashicorp/ansible"
    }
    amazon = {
      version = "= 1.8.2"
      source  = "github.com/hashicorp/amazon"
    }
    azure = {
      version = "= 1.4.5"
      source  = "github.com/hashicorp/azure"
    }
  }
}
