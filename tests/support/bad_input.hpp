// Checking the errors a reader raises for a bad file: the kind, and words of the message.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "lorafast/error.hpp"

namespace lorafast::testing {

// The message of the Error(bad_input) that `fn` must raise (a test failure otherwise).
inline std::string bad_input_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

}  // namespace lorafast::testing

#define EXPECT_MENTIONS(message, needle) \
  EXPECT_NE((message).find(needle), std::string::npos) << "'" << (message) << "' lacks '" << (needle) << "'"
