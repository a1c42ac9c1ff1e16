# The twistd plugin: `twistd pypid`. Kept import-free; pypid.tap is loaded
# only when the plugin is used.
from twisted.application.service import ServiceMaker

pypid = ServiceMaker(
    "pypid", "pypid.tap", "A private Python package index", "pypid"
)
