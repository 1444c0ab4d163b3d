build {
  sources = ["source.qemu.local"]

  provisioner "ansible" {
    playbook_file = "${path.root}/../ansible/site.yml"
    user          = var.build_user
    use_proxy     = false
    extra_arguments = [
      "--extra-vars", "@${var.ansible_extra_vars_file}",
      "--scp-extra-args", "'-O'",
    ]
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${path.root}/../ansible/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
    ]
  }
}
