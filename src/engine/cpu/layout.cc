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

std::string Layout::describe() const {
  if (is_plain()) return "plain";
  using tag = dnnl::memory::format_tag;
  if (shape.size() == 4) {
    const auto dims = to_dims(shape);
    const std::pair<tag, const char*> known[] = {{tag::nChw8c, "nChw8c"}, {tag::nChw16c, "nChw16c"}, {tag::nhwc, "nhwc"},
                                                {tag::nChw4c, "nChw4c"}};
    for (const auto& [t, name] : known) {
      if (md == dnnl::memory::desc(dims, dnnl::memory::data_type::f32, t)) return name;
    }
  }
  return "blocked";
}

bool Layout::operator==(const Layout& other) const {
  if (dtype != other.dtype || shape != other.shape) return false;
  if (dtype != DType::kFloat32) return true;
  return md == other.md;
}

}  // namespace tenet::cpu
