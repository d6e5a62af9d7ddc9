# tests/tests.mk - unit tests (one binary per tests/unit/test_<module>.c,
# linked against libmailmoat.a) and the entry point `make test`.

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/t.h $(PROXY_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) -o $@ $< $(PROXY_LIB) $(LDLIBS)

.PHONY: unit-tests
unit-tests: $(UNIT_BIN)

test: deps
	$(MAKE) all unit-tests
	tests/run-all
