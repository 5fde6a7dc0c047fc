import pytest

from db.redact import mask, mask_url


@pytest.mark.parametrize("line, masked", [
    ("export PROXY_PASSWORD=hunter2; source /etc/network_turbo",
     "export PROXY_PASSWORD=***; source /etc/network_turbo"),
    ("export http_proxy=http://bob:hunter2@proxy:3128 && conda activate py311",
     "export http_proxy=*** && conda activate py311"),
    ("export A='x y' B=\"hunter 2\"", "export A=*** B=***"),
    ("login --password hunter2 --user bob", "login --password *** --user bob"),
    ("tool --api-key='hunter 2' run", "tool --api-key=*** run"),
    ("pip config set global.index-url https://u:hunter2@mirror/simple",
     "pip config set global.index-url https://u:***@mirror/simple"),
    ("echo ghp_16C7e42F292c6912E7710c838347Ae178B4a", "echo ***"),
    # what is not a secret stays as it is
    ("source /root/miniconda3/bin/activate py311", "source /root/miniconda3/bin/activate py311"),
    ("source /etc/network_turbo", "source /etc/network_turbo"),
    (None, None),
])
def test_mask_keeps_the_words_and_hides_the_values(line, masked):
    assert mask(line) == masked


def test_mask_url_needs_no_parse():
    assert mask_url("postgresql://u:hunter2@h:notaport/d") == "postgresql://u:***@h:notaport/d"
    assert mask_url("sqlite:///b.db") == "sqlite:///b.db"
