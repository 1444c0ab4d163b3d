locals {
  # Every cloud image and snapshot carries these; lookups find an image by ImageVersion.
  # A stage of a multi-stage chain also carries ImageStage; its child finds it by both tags.
  image_tags = merge({
    Name          = "${var.image_name}-${var.image_version}"
    ImageVersion  = var.image_version
    ImageCommit   = var.image_commit
    ImageUpstream = var.upstream_digest
    ManagedBy     = "imagefactory"
  }, { for stage in compact([var.image_stage]) : "ImageStage" => stage })

  # The source AMI: by name (the Debian cloud team's), or by tags (a parent stage of this chain).
  aws_source_filters = merge(
    { architecture = "x86_64", virtualization-type = "hvm", root-device-type = "ebs" },
    { for name in compact([var.aws_source_ami_name]) : "name" => name },
    { for key, value in var.aws_source_ami_tags : "tag:${key}" => value },
    { for id in compact([var.aws_source_ami_id]) : "image-id" => id },
  )

  # An Azure stage built on its parent stage's gallery version rather than the marketplace image.
  azure_from_gallery = var.azure_source_gallery_version != ""
}
