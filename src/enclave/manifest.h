// The enclave manifest: an enclave's initial configuration, measured into MRENCLAVE together
// with the enclave binary (as Gramine measures its manifest). It names what the enclave will
// serve and under which identity, and nothing the untrusted host chooses: package file paths,
// ports and the key broker's address are launch arguments, not manifest content, so that one
// MRENCLAVE covers every deployment of the same model set.
//
//   {
//     "tenet_manifest": 1,
//     "isv_prod_id": 1, "isv_svn": 1, "debug": false,
//     "mode": "tee",
//     "models": [
//       { "name": "resnet18",
//         "package_digest": "<64 hex>",          // the sealed package's digest (tenet seal)
//         "key_resource": "default/model/resnet18",  // KBS resource path of its model key
//         "max_batch_size": 8, "max_queue_delay_us": 500, "max_queue_requests": 64 }
//     ],
//     "server": { "max_body_bytes": 67108864, "http_threads": 16 }
//   }
//
// The manifest arrives from untrusted disk; it is measured, so a changed manifest changes
// MRENCLAVE and the enclave will not pass the owner's policy. It is still parsed as hostile input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tenet::enclave {

struct ManifestModel {
  std::string name;
  std::string package_digest_hex;  // lower-case, 64 hex digits
  std::string key_resource;        // repo/type/tag
  int max_batch_size = 8;
  uint64_t max_queue_delay_us = 0;
  size_t max_queue_requests = 64;
};

struct Manifest {
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  bool debug = false;
  std::string mode = "tee";
  std::vector<ManifestModel> models;
  size_t max_body_bytes = size_t{64} << 20;
  int http_threads = 16;
};

Result<Manifest> parse_manifest(std::string_view json);

}  // namespace tenet::enclave
