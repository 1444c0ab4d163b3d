# Example values, used by `make lint` to run `packer validate`. Real builds get their values
# from the ImageBuild component (imagefactory/build.py), never from this file.
image_version           = "release-0.1.0"
image_commit            = "0123456789abcdef0123456789abcdef01234567"
upstream_path           = "upstream/debian-12-stage0-amd64.qcow2"
upstream_checksum       = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
output_directory        = "output"
ansible_extra_vars_file = "build-vars.json"
serial_log              = "serial.log"

# Cloud sources (validated only; builds need real credentials).
aws_region            = "eu-west-1"
aws_copy_regions      = ["eu-central-1"]
aws_deprecate_at      = "2027-01-01T00:00:00Z"
azure_subscription_id = "00000000-0000-0000-0000-000000000000"
azure_resource_group  = "rg-images"
azure_gallery_version = "0.1.0"
upstream_digest       = "ami-0123456789abcdef0"
