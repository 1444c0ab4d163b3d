# Example values, used by `make lint` to run `packer validate`. Real builds get their values
# from the ImageBuild component (imagefactory/build.py), never from this file.
image_version           = "release-0.1.0"
image_commit            = "0123456789abcdef0123456789abcdef01234567"
upstream_path           = "upstream/debian-12-stage0-amd64.qcow2"
upstream_checksum       = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
output_directory        = "output"
ansible_extra_vars_file = "build-vars.json"
serial_log              = "serial.log"
