export {
  type RedisSource,
  type StartRedisOptions,
  startRedis,
  type TestRedis,
} from './start-redis.js';
