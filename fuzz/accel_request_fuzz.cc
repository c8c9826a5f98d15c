// libFuzzer target: the remote accelerator's frame decoders (accel/wire.h). The input is a byte
// stream as a client would send it to `tenet accelerator`: frames are cut by decode_header and
// each payload goes through decode_request, exactly as the server does (a truncated last frame
// is decoded as-is). The same bytes are also read as server replies by the client-side decoders.
#include <cstddef>
#include <cstdint>
#include <span>

#include "accel/wire.h"

using namespace tenet::accel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  while (in.size() >= wire::kHeaderSize) {
    auto header = wire::decode_header(in.first(wire::kHeaderSize));
    if (!header.ok()) break;
    in = in.subspan(wire::kHeaderSize);
    const std::span<const uint8_t> payload = in.first(std::min<size_t>(header->payload_size, in.size()));
    in = in.subspan(payload.size());
    auto request = wire::decode_request(header->type, payload);
    if (request.ok()) {
      if (auto* spec = std::get_if<LinearSpec>(&*request)) {
        // A decoded spec must be valid and re-encode.
        if (!validate(*spec).ok() || !wire::encode_add_layer(*spec).ok()) __builtin_trap();
      }
    }
    // Client-side reply decoders on the same payload.
    (void)wire::decode_hello_reply(payload);
    (void)wire::decode_add_layer_reply(payload);
    (void)wire::decode_error(payload);
    const tenet::Shape expected = {2, 3};
    (void)wire::check_run_reply_prefix(payload.first(std::min(payload.size(), wire::run_reply_prefix_size(2))), expected);
  }
  return 0;
}
