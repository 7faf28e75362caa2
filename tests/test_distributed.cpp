// The rank-order sum and the one-process side of distributed.hpp. The several-process
// side runs under mpirun in tests/python/test_mpi_finetune.py.
//
// The sums are exact comparisons: rank order is a fixed sequence of roundings, and
// the values are chosen so that any other order rounds differently.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "lorafast/distributed.hpp"
#include "lorafast/train_loop.hpp"

namespace lorafast {
namespace {

// Ranks 0, 1, 2 holding 1e16, 1, -1e16 (per element, with signs flipped in the
// second): in rank order 1e16 + 1 rounds back to 1e16, so the sum is 0, where
// 1e16 - 1e16 + 1 would be 1.
template <class T>
void check_rank_order(T big) {
  const std::vector<T> gathered{big, -big, T{1}, T{-1}, -big, big};
  std::vector<T> out(2, T{7});
  add_ranks_in_order<T>(gathered, 3, out);
  EXPECT_EQ(out[0], T{0});
  EXPECT_EQ(out[1], T{0});
}

TEST(Distributed, AddsRanksInRankOrder) {
  check_rank_order<double>(1e16);
  check_rank_order<float>(1e8f);
}

TEST(Distributed, OneRankIsACopy) {
  const std::vector<double> gathered{0.1, -2.5, 3e-300};
  std::vector<double> out(3);
  add_ranks_in_order<double>(gathered, 1, out);
  EXPECT_EQ(out, gathered);
}

TEST(Distributed, OneProcessSumsNothing) {
  const Processes one;
  std::vector<double> d{0.1, 0.2};
  std::vector<float> f{0.1f, 0.2f};
  sum_in_rank_order(std::span<double>(d), one);
  sum_in_rank_order(std::span<float>(f), one);
  EXPECT_EQ(d, (std::vector<double>{0.1, 0.2}));
  EXPECT_EQ(f, (std::vector<float>{0.1f, 0.2f}));
  EXPECT_EQ(sum_in_rank_order(0.3, one), 0.3);
}

// Sets an environment variable for the scope, restoring it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Distributed, WithoutALauncherOneProcess) {
  const ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", nullptr), pmi("PMI_SIZE", nullptr);
  int argc = 1;
  char name[] = "lorafast_tests";
  char* args[] = {name, nullptr};
  char** argv = args;
  const Processes p = start_processes(argc, argv);
  EXPECT_EQ(p.rank, 0);
  EXPECT_EQ(p.size, 1);
  finish_processes();
}

TEST(Distributed, BuildWithoutMpiRefusesSeveralProcesses) {
  if (built_with_mpi()) GTEST_SKIP() << "this build has MPI (LORAFAST_MPI); the stub is built with -DLORAFAST_MPI=OFF";
  const ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", "2");
  int argc = 1;
  char name[] = "lorafast_tests";
  char* args[] = {name, nullptr};
  char** argv = args;
  try {
    start_processes(argc, argv);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage);
    EXPECT_NE(std::string(e.what()).find("this build has no MPI"), std::string::npos) << e.what();
  }
}

TEST(Distributed, GlobalBatchIsAMultipleOfTheProcesses) {
  TrainOptions o;
  o.batch = 6;
  o.processes = {1, 3};
  EXPECT_NO_THROW(o.validate());
  o.processes = {1, 4};
  EXPECT_THROW(o.validate(), Error);
  o.processes = {4, 4};
  o.batch = 8;
  EXPECT_THROW(o.validate(), Error);
}

}  // namespace
}  // namespace lorafast
