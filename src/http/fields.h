// Reading a field of a parsed message. Beast's operator[] looks a field up in a tree ordered by
// case-insensitive name, and for a `field` code it first turns the code back into a string: about
// 300 instructions a lookup in the profiles, where a request carries a handful of fields. A walk
// over the fields in order compares codes, or lengths before names.
#pragma once

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <cstddef>
#include <string_view>

namespace cutover::http {

// The value of the first field with code `name`, or an empty view.
template <class Fields>
std::string_view field_value(const Fields& fields, boost::beast::http::field name) {
  for (const auto& field : fields) {
    if (field.name() == name) return field.value();
  }
  return {};
}

// The value of the first field named `name` in any case, or an empty view.
template <class Fields>
std::string_view field_value(const Fields& fields, std::string_view name) {
  for (const auto& field : fields) {
    const auto field_name = field.name_string();
    if (field_name.size() == name.size() && boost::beast::iequals(field_name, name)) {
      return field.value();
    }
  }
  return {};
}

// Iterates a field list that keeps its fields as spans over one buffer, by index, through its
// field(index), which makes each field's views on the fly (http::RequestMessage,
// upstream::ResponseHead).
template <class List, class Field>
class FieldIterator {
 public:
  using value_type = Field;
  using difference_type = std::ptrdiff_t;
  FieldIterator(const List& list, std::size_t index) : list_(&list), index_(index) {}
  Field operator*() const { return list_->field(index_); }
  FieldIterator& operator++() {
    ++index_;
    return *this;
  }
  bool operator==(const FieldIterator& other) const { return index_ == other.index_; }

 private:
  const List* list_;
  std::size_t index_;
};

}  // namespace cutover::http
