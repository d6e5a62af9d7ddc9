# firmware/firmware.mk - `make firmware BOARD=x86_64|rpi4` and `make run`.
# The work is in shell scripts (firmware/*.sh) that stamp and cache every
# step under build/, so a second `make firmware` is quick.

BOARD ?= x86_64

.PHONY: firmware run firmware-clean

firmware:
	firmware/firmware.sh $(BOARD)

# Boots the x86_64 image under QEMU: SMTP on 127.0.0.1:2525, web UI on
# http://127.0.0.1:8080, a test mail server on the host as the backend.
# RUN_FRESH=1 starts from a factory-new disk.
run: deps
	$(MAKE) all
	firmware/run.sh

firmware-clean:
	rm -rf build/x86_64 build/rpi4 build/app build/run
