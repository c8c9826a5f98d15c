#include <cstring>

#include "engine/cpu/kernel.h"

namespace tenet::cpu {

dnnl::memory::dims to_dims(const Shape& shape) { return dnnl::memory::dims(shape.begin(), shape.end()); }

dnnl::memory::desc plain_md(const Shape& shape) {
  if (shape.empty()) {
    // oneDNN has no rank-0 tensors: a scalar is a 1-element vector.
    return dnnl::memory::desc({1}, dnnl::memory::data_type::f32, dnnl::memory::dims{1});
  }
  std::vector<int64_t> strides = row_major_strides(shape);
  return dnnl::memory::desc(to_dims(shape), dnnl::memory::data_type::f32, dnnl::memory::dims(strides.begin(), strides.end()));
}

Layout plain_layout(DType dtype, const Shape& shape) {
  Layout l;
  l.dtype = dtype;
  l.shape = shape;
  if (dtype == DType::kFloat32) l.md = plain_md(shape);
  return l;
}

bool Layout::is_plain() const {
  if (dtype != DType::kFloat32) return true;
  return md == plain_md(shape);
}

size_t Layout::size_bytes() const {
  if (dtype == DType::kFloat32) return md.get_size();
  return static_cast<size_t>(numel(shape)) * dtype_size(dtype);
}

namespace {
using tag = dnnl::memory::format_tag;
const std::pair<tag, const char*> kKnownTags[] = {
    {tag::nChw8c, "nChw8c"}, {tag::nChw16c, "nChw16c"}, {tag::nhwc, "nhwc"}, {tag::nChw4c, "nChw4c"}};
}  // namespace

dnnl::memory::format_tag blocked_tag(const Layout& l) {
  if (l.dtype != DType::kFloat32 || l.shape.size() != 4 || l.is_plain()) return tag::undef;
  const auto dims = to_dims(l.shape);
  for (const auto& [t, name] : kKnownTags) {
    if (l.md == dnnl::memory::desc(dims, dnnl::memory::data_type::f32, t)) return t;
  }
  return tag::undef;
}

Layout tagged_layout(const Shape& shape, dnnl::memory::format_tag t) {
  Layout l;
  l.dtype = DType::kFloat32;
  l.shape = shape;
  l.md = dnnl::memory::desc(to_dims(shape), dnnl::memory::data_type::f32, t);
  return l;
}

std::string Layout::describe() const {
  if (is_plain()) return "plain";
  const tag t = blocked_tag(*this);
  for (const auto& [known, name] : kKnownTags) {
    if (known == t) return name;
  }
  return "blocked";
}

bool Layout::operator==(const Layout& other) const {
  if (dtype != other.dtype || shape != other.shape) return false;
  if (dtype != DType::kFloat32) return true;
  return md == other.md;
}

}  // namespace tenet::cpu
