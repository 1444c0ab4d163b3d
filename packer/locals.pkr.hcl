locals {
  # Every cloud image and snapshot carries these; lookups find an image by ImageVersion.
  image_tags = {
    Name          = "${var.image_name}-${var.image_version}"
    ImageVersion  = var.image_version
    ImageCommit   = var.image_commit
    ImageUpstream = var.upstream_digest
    ManagedBy     = "imagefactory"
  }
}
