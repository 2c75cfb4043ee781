# Sourced by the install scripts. make_venv DIR: a Python virtualenv in DIR, with Debian's
# python3-venv installed first when python3 lacks the venv module (Debian keeps it apart).
make_venv() {
  local venv=$1
  if python3 -m venv "$venv" >/dev/null 2>&1; then
    return 0
  fi
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q update </dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends python3-venv </dev/null
  rm -rf "$venv"
  python3 -m venv "$venv"
}
